"""The errors minires.data raises; each message says what was expected and what to do."""
import pickle


class DatasetError(ValueError):
    """A dataset file exists but is damaged or is not what was expected."""


class DatasetNotFoundError(FileNotFoundError):
    """No copy of the dataset where we looked."""


class DownloadError(RuntimeError):
    """A download failed or did not verify; nothing was left behind."""


class UnsafeArchiveError(DatasetError):
    """A tarball member would land outside the folder it is extracted to."""


class UnsafePickleError(DatasetError, pickle.UnpicklingError):
    """A pickle asked for an object the dataset files never contain."""
