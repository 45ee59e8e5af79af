"""blissng.web"""
