"""The object store (an adapter): s3.py (clients, URIs, error codes, multipart upload),
manifest.py (the signed manifest beside every artifact), audit.py (the hash-chained audit log),
bounded.py (reading an object or an answer only up to a size fixed in advance)."""
