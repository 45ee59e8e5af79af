"""blissng.workflows"""
