// placeholder until the calibration engine (issue #3)
namespace calq::calib { int calib_module_anchor = 0; }
