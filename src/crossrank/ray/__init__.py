"""crossrank on Ray: a Ray Serve deployment of the same HTTP service (:mod:`crossrank.ray.serve`).

Ray is imported only inside functions: ``import crossrank.ray`` works without the ``ray`` extra.
The Ray Data batch job lives with the other batch code, in :mod:`crossrank.batch.ray_job`.
"""
