// placeholder: implemented by the owning area
int main() { return 0; }
