//! The city the synthetic data describes: 包头市 (Baotou, Inner Mongolia), with its county-level
//! divisions' GB/T 2260 codes, and the reference lists the generator draws from.
//!
//! Population weights follow the order of magnitude of the 2020 census (total about 2.7 million);
//! they are approximations for realistic skew, not statistics. Two districts, 石拐区 and
//! 白云鄂博矿区, are small on purpose: cells there fall under the audit threshold.

pub(crate) struct District {
    pub(crate) code: &'static str,
    pub(crate) name: &'static str,
    /// Residents, in thousands (approximate).
    pub(crate) population: u32,
    /// Share of residents with rural household registration, in percent.
    pub(crate) rural: u32,
}

pub(crate) const DISTRICTS: [District; 9] = [
    District { code: "150202", name: "东河区", population: 580, rural: 8 },
    District { code: "150203", name: "昆都仑区", population: 760, rural: 4 },
    District { code: "150204", name: "青山区", population: 530, rural: 5 },
    District { code: "150205", name: "石拐区", population: 31, rural: 30 },
    District { code: "150206", name: "白云鄂博矿区", population: 27, rural: 10 },
    District { code: "150207", name: "九原区", population: 330, rural: 25 },
    District { code: "150221", name: "土默特右旗", population: 280, rural: 60 },
    District { code: "150222", name: "固阳县", population: 140, rural: 65 },
    District { code: "150223", name: "达尔罕茂明安联合旗", population: 100, rural: 55 },
];

/// Address codes (GB/T 2260) of places migrants to Baotou were registered at birth.
pub(crate) const OTHER_REGIONS: [&str; 17] = [
    "150102", // 呼和浩特市新城区
    "150105", // 呼和浩特市赛罕区
    "150602", // 鄂尔多斯市东胜区
    "150802", // 巴彦淖尔市临河区
    "150902", // 乌兰察布市集宁区
    "110101", // 北京市东城区
    "110105", // 北京市朝阳区
    "120101", // 天津市和平区
    "130102", // 石家庄市长安区
    "140105", // 太原市小店区
    "210102", // 沈阳市和平区
    "230102", // 哈尔滨市道里区
    "370102", // 济南市历下区
    "410102", // 郑州市中原区
    "610102", // 西安市新城区
    "620102", // 兰州市城关区
    "640104", // 银川市兴庆区
];

/// Household registration types (户籍类型).
pub(crate) const HUKOU_LOCAL_URBAN: &str = "本地城镇";
pub(crate) const HUKOU_LOCAL_RURAL: &str = "本地农村";
pub(crate) const HUKOU_OTHER_URBAN: &str = "外地城镇";
pub(crate) const HUKOU_OTHER_RURAL: &str = "外地农村";

/// Education (学历), lowest to highest.
pub(crate) const EDUCATION: [&str; 7] = ["未上学", "小学", "初中", "高中/中专", "大专", "本科", "研究生"];

/// Common surnames with rough weights.
pub(crate) const SURNAMES: [(&str, u32); 30] = [
    ("王", 72),
    ("李", 70),
    ("张", 66),
    ("刘", 53),
    ("陈", 45),
    ("杨", 33),
    ("赵", 21),
    ("黄", 20),
    ("周", 19),
    ("吴", 19),
    ("徐", 15),
    ("孙", 15),
    ("胡", 13),
    ("朱", 13),
    ("高", 12),
    ("林", 11),
    ("何", 11),
    ("郭", 11),
    ("马", 11),
    ("罗", 9),
    ("梁", 8),
    ("宋", 8),
    ("郑", 7),
    ("谢", 7),
    ("韩", 7),
    ("唐", 6),
    ("冯", 6),
    ("于", 6),
    ("董", 5),
    ("乌", 3),
];

pub(crate) const GIVEN_NAME_CHARS: &str = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红建文辉鑫宇浩然欣怡晨阳子轩梓涵雨婷佳琪思远博文志国海燕丹巴特尔其木格";

/// Sections of GB/T 4754-2017 (国民经济行业分类) with a rough weight for a northern industrial city.
pub(crate) const INDUSTRIES: [(&str, &str, u32); 19] = [
    ("A", "农、林、牧、渔业", 4),
    ("B", "采矿业", 2),
    ("C", "制造业", 10),
    ("D", "电力、热力、燃气及水生产和供应业", 1),
    ("E", "建筑业", 6),
    ("F", "批发和零售业", 30),
    ("G", "交通运输、仓储和邮政业", 5),
    ("H", "住宿和餐饮业", 9),
    ("I", "信息传输、软件和信息技术服务业", 3),
    ("J", "金融业", 1),
    ("K", "房地产业", 3),
    ("L", "租赁和商务服务业", 7),
    ("M", "科学研究和技术服务业", 3),
    ("N", "水利、环境和公共设施管理业", 1),
    ("O", "居民服务、修理和其他服务业", 6),
    ("P", "教育", 2),
    ("Q", "卫生和社会工作", 1),
    ("R", "文化、体育和娱乐业", 2),
    ("S", "公共管理、社会保障和社会组织", 1),
];

/// Words enterprise names are made of.
pub(crate) const NAME_WORDS: [&str; 24] = [
    "鑫达", "华泰", "北方", "草原", "鹿城", "金盛", "恒通", "瑞丰", "宏远", "天骄", "蒙源", "阴山", "黄河", "稀宝",
    "钢联", "青城", "新元", "博信", "德润", "安泰", "万和", "利民", "众诚", "同创",
];

/// Firms planted so that some industry × district cells are dominated by one or two of them, as
/// a steel works or a mine dominates its district. They take the first enterprise indices, so
/// every scale has them.
pub(crate) struct DominantFirm {
    pub(crate) name: &'static str,
    pub(crate) district: &'static str,
    pub(crate) industry: &'static str,
    /// Registered capital, 万元.
    pub(crate) capital: i64,
    /// Share of all employees, in per mille.
    pub(crate) employee_share: u32,
}

pub(crate) const DOMINANT_FIRMS: [DominantFirm; 6] = [
    DominantFirm {
        name: "包头市鑫钢钢铁集团有限公司",
        district: "150203",
        industry: "C",
        capital: 3_200_000,
        employee_share: 60,
    },
    DominantFirm {
        name: "包头市白云稀土矿业有限责任公司",
        district: "150206",
        industry: "B",
        capital: 1_150_000,
        employee_share: 12,
    },
    DominantFirm {
        name: "包头市阴山铁矿有限公司",
        district: "150206",
        industry: "B",
        capital: 240_000,
        employee_share: 4,
    },
    DominantFirm {
        name: "包头市北重机械装备股份有限公司",
        district: "150204",
        industry: "C",
        capital: 820_000,
        employee_share: 25,
    },
    DominantFirm {
        name: "包头市青山特种车辆有限公司",
        district: "150204",
        industry: "C",
        capital: 610_000,
        employee_share: 20,
    },
    DominantFirm {
        name: "包头市九原热电有限责任公司",
        district: "150207",
        industry: "D",
        capital: 450_000,
        employee_share: 6,
    },
];
