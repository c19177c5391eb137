"""Files: the ``.rtrec`` format (``format``), its audio packing (``audiocodec``),
HAR (``har``) and importing other captures (``importer``). Pure: no sockets, no click."""
