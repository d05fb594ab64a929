"""The HTTP service (``crossrank serve``) and its web page (``crossrank ui``)."""
