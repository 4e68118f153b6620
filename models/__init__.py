"""Models, their training and evaluation scripts (run as python -m models.<script>)."""
