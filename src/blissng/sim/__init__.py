"""blissng.sim"""
