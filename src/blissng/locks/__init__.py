"""blissng.locks"""
