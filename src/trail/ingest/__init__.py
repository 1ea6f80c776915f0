"""The consumer engine: decode (pure, may dead-letter), batch, write (I/O), commit."""
