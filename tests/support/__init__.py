"""Test helpers shared by every test folder: real servers on free loopback ports."""
