"""blissng.scans"""
