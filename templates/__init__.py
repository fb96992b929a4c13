"""The built-in Jinja2 templates, installed as the package `lbgen.templates` (read by lbgen.render).

A regular package rather than a namespace: setuptools' editable finder cannot map a namespace
subpackage to another directory, and importlib.resources on Python 3.9 cannot read one.
"""
