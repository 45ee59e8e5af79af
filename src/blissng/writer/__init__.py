"""blissng.writer"""
