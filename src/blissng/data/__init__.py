"""blissng.data"""
