"""What every stage shares: errors and their one-line contract, the daemon's config, time stamps,
the upcall band, durable writes and the batch progress line.
"""
