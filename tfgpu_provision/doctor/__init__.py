"""``tfgpu-provision doctor``: read-only diagnosis of hosts whose TensorFlow does not use the GPUs.

``evidence`` reads one host's evidence document (written by the ``gpu_doctor`` role),
``rules`` correlates it with the rules in ``data/doctor_rules.yaml``, ``tflog`` adds
TensorFlow log diagnoses from ``tfgpu_provision.diagnose``, ``report`` ranks and renders,
``cli`` parses the command.
"""
