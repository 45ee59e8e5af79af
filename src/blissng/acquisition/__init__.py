"""blissng.acquisition"""
