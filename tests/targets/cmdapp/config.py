class Settings:
    def __init__(self):
        self.timeout = 30
        self.name = "cmdapp"
        self.endpoints = {"users": "/api/users", "health": "/health"}


settings = Settings()
