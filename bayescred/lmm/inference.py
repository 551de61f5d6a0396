"""placeholder"""
def lrt(*a, **k):
    raise NotImplementedError
