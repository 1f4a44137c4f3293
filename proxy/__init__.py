"""azure-auth-proxy: Microsoft Entra ID sign-in in front of apps that have none."""

__version__ = "0.1.0"
