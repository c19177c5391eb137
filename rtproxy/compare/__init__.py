"""The semantic diff: normalising a recording (``normalize``), comparing two
(``core``) and rendering the result (``render``). Pure."""
