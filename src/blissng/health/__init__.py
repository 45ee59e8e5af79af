"""blissng.health"""
