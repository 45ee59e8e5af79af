"""blissng.shell"""
