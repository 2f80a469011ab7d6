"""The AWS side of the program: one ComponentResource per module, with its grant helpers."""
