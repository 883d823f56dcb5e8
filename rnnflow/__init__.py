"""rnnflow"""
