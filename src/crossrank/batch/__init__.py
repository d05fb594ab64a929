"""``crossrank batch``: score a corpus of (query, passage) pairs offline, locally (resumable) or as a Ray Data job."""
