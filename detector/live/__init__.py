"""``whaled listen`` as a service: start-up and shutdown, signals, systemd notification, the
input monitor and the periodic self-test.
"""
