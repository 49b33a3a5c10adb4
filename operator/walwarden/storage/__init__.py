"""The object store (an adapter): s3.py (clients, URIs, error codes, multipart upload),
manifest.py (the signed manifest beside every artifact), audit.py (the hash-chained audit log)."""
