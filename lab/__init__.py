"""Run Pinhole: the loopback stack, the demo, and (as root) the firewall lab."""
