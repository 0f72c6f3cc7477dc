// placeholder: implemented by the owning area
