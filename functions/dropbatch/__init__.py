"""dropbatch: drop a JSONL file of Gemini requests into a bucket; get one result object per
request."""

__version__ = "0.1.0"
