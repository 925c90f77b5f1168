"""Files in, vectors or predictions out (Task 1 ``--file``, Task 2 ``--input``), chunk by chunk.

``reading`` (txt/tsv/csv/jsonl or stdin, read lazily, bad rows with their line number),
``writing`` (predictions and ``.npy`` through a temporary file) and ``prediction`` (the streaming
loop over both).
"""
