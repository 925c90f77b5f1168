"""Files in, vectors or predictions out (Task 1 ``--file``, Task 2 ``--input``), chunk by chunk.

``reading`` (txt/tsv/csv/jsonl or stdin, read lazily, bad rows with their line number),
``destination`` (what the output path is, and how to write it without harming what is there),
``writing`` (prediction rows and ``.npy`` vectors) and ``prediction`` (the streaming loop over both).
"""
