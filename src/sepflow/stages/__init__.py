"""One thin module per DVC stage: read the catalog paths, call the library, write, log, summarise."""
