"""blissng.demo"""
