"""``myapp``: the application the documentation's examples import from (``myapp.views``,
``myapp.models``), so that they run as written."""
