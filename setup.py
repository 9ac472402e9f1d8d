"""Packages for the folders setup.cfg maps into the ``crashwatch`` namespace (``package_dir``): each mapped
folder's package and every package below it, so a new subfolder cannot go missing from a wheel. Metadata,
dependencies and the mapping itself live in setup.cfg."""

import configparser

from setuptools import find_packages, setup

config = configparser.ConfigParser()
config.read("setup.cfg")
rooms = dict(line.split(" = ") for line in config["options"]["package_dir"].strip().splitlines())
packages = [f"{name}.{sub}" if sub else name for name, folder in rooms.items() for sub in ["", *find_packages(folder)]]

setup(packages=packages)
