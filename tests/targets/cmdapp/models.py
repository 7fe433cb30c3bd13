class User:
    def __init__(self, name, email):
        self.name = name
        self.email = email
        self._password = "secret"

    def get(self, field):
        return getattr(self, field)

    @classmethod
    def create(cls, name):
        return cls(name, name + "@example.com")

    @property
    def display(self):
        return self.name.title()


class Admin(User):
    level = 3


class BrokenRepr:
    def __repr__(self):
        raise ValueError("no repr for you")


USERS = [User("alice", "alice@example.com"), User("bob", "bob@example.com"), User.create("carol")]
ADMIN = Admin("root", "root@example.com")
BROKEN = BrokenRepr()
