// placeholder until the first pass (issue #3)
namespace calq::algorithms { int algorithms_module_anchor = 0; }
