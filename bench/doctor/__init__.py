"""`bench doctor`: the checks of every path and the GPU first-contact list."""
