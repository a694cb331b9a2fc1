/* gitfast.c: git fast-import bundles (to be written). */
