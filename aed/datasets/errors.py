class DatasetError(ValueError):
    """Bad dataset input; the message names the file (and row) and the problem."""
