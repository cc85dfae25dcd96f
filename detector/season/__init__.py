"""What a season of ``detect`` output adds up to: presence tables and chart, the season's
Raven table, validated presence and threshold guidance from a reviewed sample.
"""
