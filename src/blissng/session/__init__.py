"""blissng.session"""
