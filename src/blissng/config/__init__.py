"""blissng.config"""
