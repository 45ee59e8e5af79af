"""blissng.comm"""
