"""Recording: the mitmproxy addon (``addon``) and the lean proxy ``rtproxy record`` runs (``proxy``)."""
