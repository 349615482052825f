"""(family module, filled below)"""
