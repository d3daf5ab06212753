"""One validation layer per input kind, shared by every command (convert, evaluate, summarize, training hooks).

* ``pictures``: 2D images and label pictures (PNG, JPEG, BMP, TIFF), decoded in full;
* ``volumes``: NIfTI (and other SimpleITK) volumes, checked for truncation and non-finite voxels;
* ``arrays``: nnU-Net's ``.npz`` probability files;
* ``textfiles``: JSON and plain-text list files; ``nnunet_json``: the JSON files nnU-Net writes and reads;
* ``folders``: input folder listings and output folders (writable, not a file);
* ``endings``: the one table of file endings each kind is read from, and which ones each command accepts.

Each reader either returns data that is safe to use or raises :class:`m2s_nnunet.errors.UserError` naming the
file, the problem and the fix. Nothing here writes anything except the probe file of ``check_output_folder``.
"""
