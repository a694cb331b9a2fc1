/* gitbare.c: bare repository bundles (to be written). */
