"""The order book of many instruments: ``book`` (the Python face), ``layout`` (tables and columns),
``book_nb`` (the compiled kernels), ``depth`` (dense L2 depth by price rank), ``replay`` (files into books)."""
