"""A vantage6-style test algorithm (the layout of vantage6's algorithm template)."""

from setuptools import find_packages, setup

PKG_NAME = "v6-average-py"

setup(
    name=PKG_NAME,
    version="1.0.0",
    description="Federated average and count by group, written against vantage6-algorithm-tools",
    packages=find_packages(),
    python_requires=">=3.10",
    install_requires=["vantage6-algorithm-tools>=4,<5", "pandas"],
)
