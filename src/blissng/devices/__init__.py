"""blissng.devices"""
